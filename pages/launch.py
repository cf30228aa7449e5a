"""Launch: pick an algorithm, a base checkpoint (the workspace's or any HF directory), a task (built
in, a data file, a reasoning-gym generator) and split, set the config (documented defaults, help
on every field), and queue the run in the background."""

import streamlit as st

import app
from engine import dashboard, launch, workspace
from engine.config import CONFIGS
from engine.dashboard import actions
from engine.errors import ReasonlabError
from engine.tasks import TASKS

app.through_navigation()  # a link opened before app.py first ran (app.py says why)

HOME = str(workspace.home())
OTHER = "another directory…"
FOLDED = {"shared": "Sampling and evaluation", "model": "Model"}


@st.cache_data(ttl=5, show_spinner=False)
def load_bases(home):
    return dashboard.start_points(dashboard.store_at(home))


def field_widget(field, key):
    """One config field as a widget; returns its value (floats as typed text: the config parses them)."""
    if field.kind == "bool":
        return st.checkbox(field.name, value=field.default, help=field.doc, key=key)
    if field.kind == "int":
        return st.number_input(field.name, value=field.default, step=1, help=field.doc, key=key)
    if field.kind == "choice":
        return st.selectbox(field.name, field.choices, index=field.choices.index(field.default), help=field.doc, key=key)
    text = f"{field.default:g}" if field.kind == "float" else str(field.default)
    return st.text_input(field.name, value=text, help=field.doc, key=key)


def form(fields, algo, size, columns=3):
    """Widgets in a grid, each with an empty slot below it for its validation error."""
    values, slots = {}, {}
    cols = st.columns(columns)
    for i, field in enumerate(fields):
        with cols[i % columns]:
            values[field.name] = field_widget(field, f"{algo}:{size}:{field.name}")
            slots[field.name] = st.empty()
    return values, slots


st.title("Launch a run")
try:
    algo = st.radio("Algorithm", list(launch.LABELS), format_func=launch.LABELS.get, horizontal=True)
    st.caption(" ".join(CONFIGS[algo].__doc__.split()))

    actions.copy_shipped_base()  # on first use: the quickstart's start point is offered here too
    bases = load_bases(HOME)
    if not bases:
        st.info("No checkpoint to start from yet. Start the quickstart on Home (it starts from the base model "
                "that ships with reasonlab), or run `reasonlab sft --preset tiny` in a terminal; or give a "
                "checkpoint directory below.")
    c1, c2, c3 = st.columns([2, 1, 1])
    labels = [label for label, _ in bases] + [OTHER]
    chosen = c1.selectbox("Base checkpoint", labels, help="The model training starts from (a Hugging Face directory).")
    base = dict(bases).get(chosen) or c1.text_input(
        "Checkpoint directory", placeholder="/path/to/checkpoint",
        help="Any Hugging Face causal LM directory (config.json, weights, tokenizer): one reasonlab made, or a "
             "downloaded model such as Qwen2.5-0.5B-Instruct.")
    base_error = c1.empty()
    names = list(TASKS)
    task = c2.selectbox("Task", names, index=names.index("multistep"), format_func=lambda t: f"{t}: {launch.TASK_LABELS[t]}",
                        help="Where the problems come from: the built-in word problems, a GSM8K / SVAMP / "
                             "question-answer file, or a reasoning-gym generator.")
    splits = TASKS[task].splits
    split = c3.selectbox("Evaluation split", splits, index=splits.index("test"),
                         help="Split evaluated at every checkpoint (multistep ood: more steps, larger numbers; "
                              "files: test is eval_data, or ~10% of data; all: every problem of data).")
    values, slots = {}, {}
    if launch.task_fields(task):
        values, slots = form(launch.task_fields(task), "task", task)
    size = st.radio("Size", list(launch.SIZES), horizontal=True, help=launch.SIZE_HELP)

    fields = launch.fields(algo, size)
    st.subheader(f"{launch.LABELS[algo]} settings")
    own, own_slots = form([f for f in fields if f.group == "algorithm"], algo, size)
    folded = {}
    for group, title in FOLDED.items():
        with st.expander(title):
            group_values, group_slots = form([f for f in fields if f.group == group], algo, size)
        folded.update({name: title for name in group_values})
        values.update(group_values)
        slots.update(group_slots)
    values.update(own)
    slots.update(own_slots, base=base_error, task=base_error, eval_split=base_error)

    checked = launch.check(algo, base, {**values, "task": task, "eval_split": split})
    if checked.cfg is None and (base or checked.field != "base"):  # no base yet: the info above says what to do
        slots.get(checked.field, base_error).error(dashboard.literal(checked.message), icon=":material/error:")
        if checked.field in folded:  # its slot may be folded away
            st.error(f"{dashboard.literal(checked.message)} (under {folded[checked.field]})", icon=":material/error:")
    name = st.text_input("Run name (optional)", placeholder="e.g. ei-k32")
    if st.button("Launch", type="primary", icon=":material/rocket_launch:", disabled=checked.cfg is None):
        st.session_state["launched"] = actions.launch_run(dashboard.store_at(HOME), checked.cfg, name)
    if "launched" in st.session_state:
        run_id = st.session_state["launched"]
        st.success(f"Run {run_id} is queued; a background process trains it (one run at a time) and it keeps "
                   "going if you close this tab.", icon=":material/check_circle:")
        st.page_link("pages/runs.py", label=f"Watch run {run_id}", icon=":material/monitoring:",
                     query_params={"run": run_id})
except ReasonlabError as e:
    st.error(dashboard.literal(e))
