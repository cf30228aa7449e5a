"""Home: what reasonlab is and what is in this workspace."""

import streamlit as st

from engine.workspace import checkpoints_dir, home

st.title("reasonlab")
st.write("An interactive lab for RL fine-tuning of language models on math reasoning.")
st.caption(f"Workspace: {home()}")

found = sorted(p.name for p in checkpoints_dir().glob("*") if (p / "config.json").exists()) if checkpoints_dir().exists() else []
if found:
    st.subheader("Checkpoints")
    st.dataframe({"checkpoint": found}, hide_index=True)
else:
    st.info("No checkpoints yet. Build the tiny base model with `reasonlab sft --preset tiny` "
            "(about a minute on a laptop CPU); launching runs from here comes next.")
