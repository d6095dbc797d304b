"""Small projects for the run-records tests (files for conftest's ``make_project``)."""

from __future__ import annotations

REPORTING = {
    "stages/__init__.py": "",
    "stages/helpers.py": '''
        def step_size(lr):
            """How far one step moves."""
            return lr * 2
    ''',
    "stages/train.py": '''
        import logging

        from orchestrator import aggregate, stage

        from .helpers import step_size

        log = logging.getLogger("train")


        @stage(outputs=["data"])
        def make_data(n: int = 20):
            print(f"making {n} points")
            return list(range(n))


        @stage(inputs=["data"], outputs=["model"])
        def train(data, lr: float, ctx):
            w = 0.0
            loss = 1.0
            for step in range(8):
                loss = (1 - w) ** 2
                w += step_size(lr) * (1 - w)
                ctx.metric("loss", loss, step=step)
            log.info("trained with lr=%s", lr)
            ctx.report("notes", "# Training\\n**lr** is " + str(lr) + " <script>alert('x')</script>")
            ctx.report("scores", {"accuracy": 1 - loss})
            return {"w": w, "n": len(data)}


        @aggregate(inputs=["model"], outputs=["leaderboard"])
        def leaderboard(model, ctx):
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
            import pandas as pd

            frame = pd.DataFrame([{"set": k, "w": v["w"]} for k, v in model.items()])
            ctx.report("table", frame)
            figure, axes = plt.subplots(figsize=(3, 2))
            axes.bar(frame["set"], frame["w"])
            ctx.report("weights", figure)
            plt.close(figure)
            return frame.to_dict("records")
    ''',
    "params/sweep.yaml": "description: A tiny learning-rate sweep.\nparams:\n  n: 20\ngrid:\n  lr: [0.1, 0.3]\n",
    "params/slow.yaml": "description: Small learning rates.\nparams:\n  n: 20\ngrid:\n  lr: [0.05, 0.06]\n",
}

SLOW = {
    "stages/__init__.py": "",
    "stages/slow.py": '''
        import os
        import time

        from orchestrator import stage


        @stage(outputs=["a"])
        def first():
            return 1


        @stage(inputs=["a"], outputs=["b"])
        def second(a):
            with open(os.environ["RUNS_LOG"], "a") as handle:
                handle.write("second-start\\n")
            time.sleep(60)
            return a + 1
    ''',
    "params/p.yaml": "params: {}\n",
}

FAILING = {
    "stages/__init__.py": "",
    "stages/flaky.py": '''
        from orchestrator import stage


        @stage(outputs=["a"])
        def first():
            print("first is fine")
            return 1


        @stage(inputs=["a"], outputs=["b"])
        def second(a, limit: int = 0):
            print("about to fail with limit", limit)
            if a > limit:
                raise ValueError(f"a={a} is over the limit {limit}")
            return a
    ''',
    "params/p.yaml": "params:\n  limit: 0\n",
}
