"""jupyter_kernel_test's conformance suite, run against the ``loom`` kernelspec.

``KernelTests`` starts the kernel with jupyter_client's ``start_new_kernel`` and
checks each sample below; every sample is filled in so that no test of the suite
is skipped. (Version 0.7 of the suite has no stdin/``input()`` test; stdin is
covered by ``test_message_schemas.py`` and ``test_jupyter_console.py``.)
"""

from __future__ import annotations

import jupyter_kernel_test as jkt
import pytest

pytestmark = pytest.mark.peer


# Subclass through the module: a TestCase imported by name would be collected and run too.
class TestLoomKernel(jkt.KernelTests):
    kernel_name = "loom"
    language_name = "python"
    file_extension = ".py"

    code_hello_world = "print('hello, world')"
    code_stderr = "import sys; print('oops', file=sys.stderr)"

    completion_samples = [
        {"text": "zi", "matches": {"zip"}},
        {"text": "impo", "matches": {"import"}},
        {"text": "clear_o", "matches": {"clear_output"}},  # in Loom's namespace, no import
    ]

    complete_code_samples = ["1", "print('hello, world')", "def f(x):\n  return x*2\n\n\n"]
    incomplete_code_samples = ["print('''hello", "def f(x):\n  x += 1", "for i in range(3):"]
    invalid_code_samples = ["import = 7q", "x = )"]

    code_page_something = "len?"
    code_generate_error = "raise RuntimeError('boom')"

    code_execute_result = [
        {"code": "1+2+3", "result": "6"},
        {"code": "[n * n for n in range(4)]", "result": "[0, 1, 4, 9]"},
        {"code": "'ab' * 2", "result": "'abab'"},
    ]
    code_display_data = [
        {"code": "display('plain')", "mime": "text/plain"},
        {"code": "display({'text/html': '<b>raw</b>'}, raw=True)", "mime": "text/html"},
        {
            "code": "class H:\n    def _repr_html_(self): return '<b>x</b>'\ndisplay(H())",
            "mime": "text/html",
        },
    ]

    # Must match exactly one of the sources in code_execute_result (a SQLite GLOB).
    code_history_pattern = "1+2+*"
    supported_history_operations = ("tail", "range", "search")

    code_inspect_sample = "zip"
    code_clear_output = "print('gone'); clear_output()"


class TestLoomIopubWelcome(jkt.IopubWelcomeTests):
    kernel_name = "loom"
    support_iopub_welcome = True
