"""reasonlab dashboard entry: page config and navigation only (pages/ hold the screens)."""

import streamlit as st

st.set_page_config(page_title="reasonlab", page_icon=":material/psychology:", layout="wide")
st.navigation([st.Page("pages/home.py", title="Home", icon=":material/home:", default=True)]).run()
