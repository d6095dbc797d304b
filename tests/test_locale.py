"""All text is UTF-8 whatever the locale: keys, param files, sources, logs and the CLI's output."""

from __future__ import annotations

import subprocess

from conftest import EXPERIMENT

FILES = {
    "stages/__init__.py": "",
    "stages/s.py": '''
        from orchestrator import stage

        GREETING = "héllo …"  # a non-ASCII constant: part of the key


        @stage(outputs=["card"])
        def card(who: str = "x"):
            print(f"for {who}: {GREETING}")
            return f"{GREETING} {who}"
    ''',
    "params/p.yaml": "description: Zoë's run …\nparams:\n  who: Zoë\n",
}


def _run(proj, *args: str, locale: str) -> subprocess.CompletedProcess[bytes]:
    env = proj.env()
    for name in ("LANG", "LC_ALL", "LC_CTYPE", "PYTHONUTF8", "PYTHONIOENCODING"):
        env.pop(name, None)
    if locale == "ascii":  # what a bare C locale gives when Python does not coerce it
        env.update(LC_ALL="C", PYTHONCOERCECLOCALE="0", PYTHONUTF8="0")
    else:
        env.update(LC_ALL="C.UTF-8")
    return subprocess.run([*EXPERIMENT, *args], cwd=proj.root, env=env, capture_output=True, timeout=120)


def test_keys_files_and_output_are_the_same_under_an_ascii_locale(make_project):
    proj = make_project(FILES)
    first = _run(proj, "run", "p", "--json", locale="utf-8")
    assert first.returncode == 0, first.stderr.decode()
    again = _run(proj, "run", "p", "--json", locale="ascii")
    assert again.returncode == 0, again.stderr.decode("utf-8", "replace")
    assert b'"status": "cached"' in again.stdout  # the same keys: sources and params read as UTF-8
    runs = _run(proj, "runs", locale="ascii")
    assert runs.returncode == 0, runs.stderr.decode("utf-8", "replace")
    assert "Zoë" in runs.stdout.decode("utf-8") or "…" in runs.stdout.decode("utf-8")
    forced = _run(proj, "run", "p", "--force", "card", locale="ascii")
    assert forced.returncode == 0, forced.stderr.decode("utf-8", "replace")
    assert "for Zoë: héllo …" in (forced.stdout + forced.stderr).decode("utf-8")
    logs = list((proj.root / "cache" / "runs").rglob("*.log"))
    assert any("for Zoë: héllo …" in p.read_text(encoding="utf-8") for p in logs)
