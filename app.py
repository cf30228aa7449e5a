"""reasonlab dashboard entry: page config and navigation only (pages/ hold the screens)."""

import streamlit as st

st.set_page_config(page_title="reasonlab", page_icon=":material/psychology:", layout="wide")
st.navigation({
    "": [st.Page("pages/home.py", title="Home", icon=":material/home:", default=True)],
    "Train": [st.Page("pages/launch.py", title="Launch", icon=":material/rocket_launch:"),
              st.Page("pages/runs.py", title="Runs", icon=":material/monitoring:")],
    "Inspect": [st.Page("pages/solutions.py", title="Solutions", icon=":material/account_tree:"),
                st.Page("pages/pass_at_k.py", title="pass@k", icon=":material/show_chart:"),
                st.Page("pages/diversity.py", title="Diversity", icon=":material/scatter_plot:"),
                st.Page("pages/compare.py", title="Compare", icon=":material/compare:")],
}).run()
