"""Where CloudTrail records come from: local files in every shape AWS writes them.

Raw AWS JSON stays inside ``sources/`` and ``normalize/``; the rest of iamtrim sees model types.
"""

from iamtrim.sources.files import FileRead, iter_input_files, read_file
from iamtrim.sources.records import Record

__all__ = ["FileRead", "Record", "iter_input_files", "read_file"]
