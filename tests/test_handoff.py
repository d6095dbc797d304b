"""In-process runs hand a stage's outputs to the next stage without reloading them, never changing what it sees."""

from __future__ import annotations

import json
import os

from orchestrator import load

COUNTING = '''
    import os
    from pathlib import Path

    from orchestrator import Cacher, register_cacher, stage


    def mark(name):
        with open(os.environ["RUNS_LOG"], "a") as handle:
            handle.write(name + "\\n")


    class Counted(Cacher):
        """Lists of words that say when they are loaded; a reload is indistinguishable from the original."""

        name = "counted"

        @classmethod
        def hands_off(cls, obj):
            return type(obj) is list

        def save(self, obj, path):
            Path(path).write_text("\\n".join(obj))

        def load(self, path):
            mark("load")
            return Path(path).read_text().split("\\n")


    register_cacher(Counted)


    @stage(outputs=["text"], cachers={"text": "counted"})
    def make_text(word: str = "hello"):
        return [word] * 3


    @stage(inputs=["text"], outputs=["upper"])
    def shout(text):
        return "".join(text).upper()


    @stage(inputs=["text"], outputs=["length"])
    def measure(text):
        return len("".join(text))
'''


def test_the_next_stage_gets_the_output_without_a_reload_and_a_second_consumer_loads_it(make_project):
    proj = make_project({"stages/__init__.py": "", "stages/words.py": COUNTING, "params/p.yaml": "params: {}\n"})
    summary = proj.run_json("p", "--target", "upper")
    assert summary["status"] == "succeeded"
    assert proj.ran() == []  # shout ran right after make_text: no load
    summary = proj.run_json("p")
    assert summary["status"] == "succeeded"
    assert proj.ran() == ["load"]  # measure, in a later run, reads the stored copy
    os.chdir(proj.root)
    assert load("upper", params="p") == "HELLOHELLOHELLO"


def test_two_consumers_in_one_run_load_at_most_once_and_get_the_same_value(make_project):
    proj = make_project({"stages/__init__.py": "", "stages/words.py": COUNTING, "params/p.yaml": "params: {}\n"})
    assert proj.run_json("p")["status"] == "succeeded"
    assert proj.ran().count("load") <= 1  # handed to one consumer, loaded for the other
    os.chdir(proj.root)
    assert load("length", params="p") == 15 and load("upper", params="p") == "HELLOHELLOHELLO"


SHARED = '''
    import functools

    import numpy as np

    from orchestrator import stage


    @functools.cache
    def raw_signal():
        return np.arange(10, dtype=np.float64)


    @stage(outputs=["signal"])
    def make_signal(session: int):
        return raw_signal()   # the same object for every param set of the run


    @stage(inputs=["signal"], outputs=["centered"])
    def center(signal):
        signal -= signal.mean()     # in place, as numpy code often does
        return signal


    @stage(inputs=["centered"], outputs=["raw_total"])
    def raw_total(centered):
        return float(raw_signal().sum())   # reads the module's cached array again
'''


def test_an_object_still_used_elsewhere_is_not_handed_to_a_consumer_that_modifies_it(make_project):
    proj = make_project({
        "stages/__init__.py": "",
        "stages/arrays.py": SHARED,
        "params/p.yaml": "sets:\n  - name: one\n    session: 1\n  - name: two\n    session: 2\n",
    })
    assert proj.run_json("p")["status"] == "succeeded"
    os.chdir(proj.root)
    for param_set in ("one", "two"):  # set two's make_signal returned the cached array after set one's center
        assert load("signal", params="p", param_set=param_set).tolist() == list(range(10))
        assert load("centered", params="p", param_set=param_set).tolist() == [x - 4.5 for x in range(10)]
        assert load("raw_total", params="p", param_set=param_set) == 45.0


def test_an_output_goes_to_one_consumer_the_others_read_the_stored_copy(make_project):
    proj = make_project({
        "stages/__init__.py": "",
        "stages/arrays.py": '''
            import numpy as np

            from orchestrator import stage

            @stage(outputs=["fresh"])
            def make_fresh():
                return np.arange(10, dtype=np.float64)

            @stage(inputs=["fresh"], outputs=["zeroed"])
            def zero(fresh):
                fresh[:] = 0.0
                return float(fresh.sum())

            @stage(inputs=["fresh"], outputs=["total"])
            def add_up(fresh):
                return float(fresh.sum())
        ''',
        "params/p.yaml": "params: {}\n",
    })
    assert proj.run_json("p")["status"] == "succeeded"
    os.chdir(proj.root)
    assert load("zeroed", params="p") == 0.0
    assert load("total", params="p") == 45.0  # whichever ran second saw the stored values
    assert load("fresh", params="p").tolist() == list(range(10))


def test_values_a_cacher_does_not_keep_exactly_reach_the_consumer_as_a_reload_would(make_project):
    proj = make_project({
        "stages/__init__.py": "",
        "stages/pairs.py": '''
            from orchestrator import stage

            @stage(outputs=["pair"], cachers={"pair": "json"})
            def make_pair():
                return tuple(range(1, 3))

            @stage(inputs=["pair"], outputs=["kind"])
            def kind(pair):
                return type(pair).__name__
        ''',
        "params/p.yaml": "params: {}\n",
    })
    assert proj.run_json("p")["status"] == "succeeded"
    os.chdir(proj.root)
    assert load("kind", params="p") == "list"  # what a warm run sees too: JSON has no tuples


def test_an_output_the_next_stage_does_not_read_is_dropped_before_it_starts(make_project):
    proj = make_project({
        "stages/__init__.py": "",
        "stages/m.py": '''
            import numpy as np

            from orchestrator import stage

            @stage(outputs=["seed_value"])
            def seed_value():
                return 3

            @stage(inputs=["seed_value"], outputs=["big"])
            def big(seed_value):
                return np.full(300 * 2**20 // 8, float(seed_value))  # 300 MiB, may be handed over

            @stage(inputs=["seed_value"], outputs=["unrelated"])
            def unrelated(seed_value):
                return seed_value + 1

            @stage(inputs=["big"], outputs=["total"])
            def total(big):
                return float(big[:10].sum())
        ''',
        "params/p.yaml": "params: {}\n",
    })
    summary = proj.run_json("p")
    order = [n["stage"] for n in summary["nodes"]]
    assert order.index("unrelated") == order.index("big") + 1  # runs right after big, without reading it
    shown = json.loads(proj.experiment("show", "last", "--json").stdout)
    peaks = {e["stage"]: e["peak_rss"] for e in shown["executions"]}
    assert peaks["big"] > 300 * 2**20
    assert peaks["unrelated"] < 200 * 2**20  # big's array was not still held while it ran
    os.chdir(proj.root)
    assert load("total", params="p") == 30.0


def test_a_cacher_subclass_that_changes_what_is_saved_does_not_inherit_the_handover(make_project):
    proj = make_project({
        "stages/__init__.py": "",
        "stages/m.py": '''
            import numpy as np

            from orchestrator import register_cacher, stage
            from orchestrator.cachers.builtin import NumpyCacher


            class Float32(NumpyCacher):
                """Arrays stored as float32, to halve the store."""

                name = "float32"

                def save(self, obj, path):
                    super().save(obj.astype(np.float32), path)


            register_cacher(Float32)


            @stage(outputs=["weights"], cachers={"weights": "float32"})
            def weights():
                return np.full(7, 0.5)

            @stage(inputs=["weights"], outputs=["dtype"])
            def dtype(weights):
                return str(weights.dtype)
        ''',
        "params/p.yaml": "params: {}\n",
    })
    assert proj.run_json("p")["status"] == "succeeded"
    os.chdir(proj.root)
    assert load("dtype", params="p") == "float32"  # what a reload gives, on the first run as on later ones


def test_a_cacher_that_streams_differently_does_not_inherit_the_handover():
    """hands_off of the text cacher promises nothing about a subclass that writes other bytes."""
    from orchestrator.cachers.builtin import TextCacher
    from orchestrator.engine.handoff import Handoff

    class Reversed(TextCacher):
        name = "reversed"

        def write(self, obj, file):
            file.write(obj[::-1].encode())

        def read(self, file):
            return file.read().decode()[::-1]

    handoff = Handoff()
    assert handoff.keep("h1", TextCacher(), {0: "".join(["ab", "c"])}.pop(0))  # the built-in: handed over
    assert not handoff.keep("h2", Reversed(), {0: "".join(["ab", "c"])}.pop(0))
