"""The command line when the reader of its output goes away (a pipe into `head`)."""
import os
import subprocess
import sys


def test_a_closed_pipe_ends_quietly():
    # `tinype info | head -1` once head has gone: every write of tinype's hits a pipe with no reader.
    # The reading end is closed before the child writes anything, so the outcome does not depend on
    # timing: the first print raises BrokenPipeError in the child.
    code = "import sys; from tinype.cli import main; sys.exit(main(['info']))"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 1
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
