"""reasonlab dashboard entry: page config and navigation only (pages/ hold the screens)."""

import streamlit as st

NAVIGATED = "reasonlab_navigation"  # set in session state by every run that goes through main()


def main():
    st.set_page_config(page_title="reasonlab", page_icon=":material/psychology:", layout="wide")
    st.session_state[NAVIGATED] = True
    st.navigation({
        "": [st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
             st.Page("pages/findings.py", title="Findings", icon=":material/fact_check:")],
        "Train": [st.Page("pages/launch.py", title="Launch", icon=":material/rocket_launch:"),
                  st.Page("pages/runs.py", title="Runs", icon=":material/monitoring:")],
        "Inspect": [st.Page("pages/solutions.py", title="Solutions", icon=":material/account_tree:"),
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


if __name__ == "__main__":
    main()
