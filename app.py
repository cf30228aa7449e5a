"""reasonlab dashboard entry: page config and navigation (pages/ hold the screens), and what every
page shares: arriving through a link, and keeping its view in the URL."""

import time

import streamlit as st

from engine.dashboard import links

NAVIGATED = "reasonlab_navigation"  # set in session state by every run that goes through main()
REFRESHED = "reasonlab_refreshed_at"  # when this session last refreshed the runs' status
REFRESH_EVERY_S = 1.0


def main():
    st.set_page_config(page_title="reasonlab", page_icon=":material/psychology:", layout="wide")
    st.session_state[NAVIGATED] = True
    st.navigation({
        "": [st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
             st.Page("pages/findings.py", title="Findings", icon=":material/fact_check:")],
        "Train": [st.Page("pages/launch.py", title="Launch", icon=":material/rocket_launch:"),
                  st.Page("pages/runs.py", title="Runs", icon=":material/monitoring:")],
        "Inspect": [st.Page("pages/solutions.py", title="Solutions", icon=":material/account_tree:"),
                    st.Page("pages/search.py", title="Search", icon=":material/search:"),
                    st.Page("pages/pass_at_k.py", title="pass@k", icon=":material/show_chart:"),
                    st.Page("pages/diversity.py", title="Diversity", icon=":material/scatter_plot:"),
                    st.Page("pages/compare.py", title="Compare", icon=":material/compare:")],
    }).run()


def through_navigation():
    """Called first by every page. Until app.py first calls st.navigation, Streamlit takes pages/
    for an old-style multipage app: a link to a page opened before anyone opened Home runs that
    page alone, without this navigation or layout, for every session until Home is opened. Such a
    run goes through main() instead, which shows the page the link names."""
    if not st.session_state.get(NAVIGATED):
        main()
        st.stop()


def refresh_runs(home: str, *loaders) -> None:
    """Mark the runs whose process died (or went silent) as interrupted (actions.refresh, as
    `reasonlab runs` does), then clear the page's cached `loaders` if that changed a run. At most
    once a second per session: a page's body and its live fragment both ask on one rerun."""
    from engine import dashboard
    from engine.dashboard import actions

    now = time.monotonic()
    if now - st.session_state.get(REFRESHED, float("-inf")) < REFRESH_EVERY_S:
        return
    st.session_state[REFRESHED] = now
    if actions.refresh(dashboard.store_at(home)):
        for load in loaders:
            load.clear()


def from_url(name: str, options, default: int = 0) -> int:
    """The index of the option the page's link names in parameter `name` (else `default`)."""
    return links.pick(options, st.query_params.get(name), default)


def all_from_url(name: str, options, default=()) -> list:
    """The options the link names in `name`, comma-separated (else `default`)."""
    return links.picks(options, st.query_params.get(name), default)


def share(slot, page: str, **params) -> None:
    """Put the view's state in the URL (the address bar becomes a link to it) and, in `slot` (a
    container placed where the button belongs), a Copy link button showing that link."""
    st.query_params.from_dict(links.state(params))
    with slot.popover("Copy link", icon=":material/content_copy:"):  # (not /link: its name shows as text)
        st.caption("A link to this view (the icon beside it copies it):")
        st.code(links.view_url(st.context.url, page, params), language=None)


if __name__ == "__main__":
    main()
