"""XLSForm workbooks in (reading.py: a workbook becomes a draft definition) and out (export.py:
a definition as the workbook an author would write)."""

from app.services.xlsform.export import MEDIA_TYPE, workbook_of, xlsform_of
from app.services.xlsform.reading import read_definition, to_definition

__all__ = ["MEDIA_TYPE", "read_definition", "to_definition", "workbook_of", "xlsform_of"]
