"""Let pytest explain a failed ``assert`` in the shared helpers too."""

import pytest

pytest.register_assert_rewrite("tests.structured._common")
