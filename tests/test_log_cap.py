"""A stage that prints without end does not fill the run store: its log keeps the head and the tail."""

from __future__ import annotations


def test_a_stage_log_keeps_its_head_and_tail_and_says_what_it_cut(make_project):
    proj = make_project({
        "stages/__init__.py": "",
        "stages/s.py": '''
            from orchestrator import stage


            @stage(outputs=["out"])
            def chatty():
                print("first line")
                for i in range(700_000):
                    print(f"progress line {i:07d} " + "x" * 60)
                print("last line")
                return 1
        ''',
        "params/p.yaml": "params: {}\n",
    })
    proc = proj.experiment("run", "p", timeout=300)
    assert "last line" in proc.stdout  # the console gets everything
    logs = list((proj.root / "cache" / "runs").rglob("*.log"))
    log = max(logs, key=lambda p: p.stat().st_size)
    text = log.read_text()
    assert log.stat().st_size < 12 << 20  # ~50 MB printed
    assert text.startswith("first line") and text.rstrip().endswith("last line")
    assert "characters of output cut here" in text
    assert "progress line 0000000" in text and "progress line 0699999" in text
