"""CSV files of the command line: reading picked columns, target labels, writing.

:func:`read_csv` parses only the columns a command asks for: numeric ones into
one float64 matrix (every cell a finite number, or an error naming its line
and column) and text ones kept as strings (an ``id`` to pass through, or a
target whose labels may be words). Columns not asked for are never parsed.
"""
import csv
import math

import numpy as np


class CLIError(Exception):
    """A user-facing error: printed as one line, exit status 1."""


def delimiter_of(text):
    """The one-character delimiter ``--delimiter`` names (``tab`` or ``\\t`` for a tab)."""
    text = {"tab": "\t", "\\t": "\t"}.get(text, text)
    if len(text) != 1 or text in "\"\r\n":
        raise CLIError(f"--delimiter must be one character (or 'tab'), not a quote or a "
                       f"line break; got {text!r}")
    return text


def _header(path, reader):
    try:
        header = next(reader)
    except StopIteration:
        raise CLIError(f"{path} is empty: expected a header row and data rows") from None
    header = [h.strip() for h in header]
    if not any(header):
        raise CLIError(f"{path}: the first row must name the columns")
    if len(header) == 1:
        other = next((d for d in ",;\t|" if d in header[0] and d != reader.dialect.delimiter),
                     None)
        if other is not None:
            raise CLIError(f"{path}: the header is one column named {header[0]!r}; are the "
                           f"values separated by {other!r}? (see --delimiter)")
    first = {}
    for i, name in enumerate(header):
        if name in first:
            raise CLIError(f"{path}: columns {first[name] + 1} and {i + 1} are both named "
                           f"{name!r}; every column needs a name of its own")
        first[name] = i
    return header


def number(path, line, name, cell):
    """The finite float in ``cell``, or a CLIError naming the line and column."""
    try:
        value = float(cell)
    except ValueError:
        what = "a missing value" if not cell.strip() else f"{cell.strip()!r}"
        raise CLIError(f"{path}, line {line}, column {name!r}: {what} is not a number "
                       "(this column must be numeric; train's --ignore leaves a column out)") from None
    if not math.isfinite(value):
        raise CLIError(f"{path}, line {line}, column {name!r}: {cell.strip()!r} is not a finite "
                       "number (NaN and infinite values cannot be used)")
    return value


def read_csv(path, shard=None, delimiter=",", pick=None):
    """``(header, X, text, lines)`` of a CSV file with a header row.

    ``pick(header)`` returns ``(numeric, text)``: lists of column names; by
    default every column is numeric. ``X`` holds the numeric columns in that
    order (float64, finite); ``text`` maps each text column to its cells
    (stripped strings); ``lines`` are the file line numbers of the rows.
    ``shard=(rank, size)`` keeps only the data rows ``i`` with
    ``i % size == rank`` (the others are skipped unparsed): each MPI rank
    reads its own rows.
    """
    try:
        fh = open(path, newline="", encoding="utf-8-sig")
    except OSError as err:
        raise CLIError(f"cannot read {path}: {err.strerror or err}") from None
    with fh:
        try:
            reader = csv.reader(fh, delimiter=delimiter)
            header = _header(path, reader)
            numeric, texts = pick(header) if pick is not None else (header, [])
            num_at = [header.index(n) for n in numeric]
            text_at = [header.index(n) for n in texts]
            rows, text, lines, index = [], [[] for _ in texts], [], -1
            for row in reader:
                if not row or all(not c.strip() for c in row):
                    continue
                index += 1
                if shard is not None and index % shard[1] != shard[0]:
                    continue
                line = reader.line_num
                if len(row) != len(header):
                    hint = "" if len(header) > 1 or delimiter != "," else \
                        " (another delimiter? see --delimiter)"
                    raise CLIError(f"{path}, line {line}: {len(row)} values but the header "
                                   f"names {len(header)} columns{hint}")
                rows.append([number(path, line, header[j], row[j]) for j in num_at])
                for cells, j in zip(text, text_at):
                    cells.append(row[j].strip())
                lines.append(line)
        except (csv.Error, UnicodeDecodeError) as err:
            raise CLIError(f"{path}: not a readable CSV file ({err})") from None
    if not rows:
        if shard is not None and index >= 0:
            raise CLIError(f"{path} has {index + 1} data rows, fewer than the {shard[1]} ranks")
        raise CLIError(f"{path} has a header but no data rows")
    X = np.array(rows, dtype=np.float64).reshape(len(rows), len(num_at))
    return header, X, dict(zip(texts, text)), lines


def target_numbers(path, name, cells, lines):
    """The target column as float64 numbers when every cell is one (a
    non-finite number is an error naming its line), or None when some cell
    is a word (the column holds class labels). A blank cell is an error."""
    for text, line in zip(cells, lines):
        if not text:
            raise CLIError(f"{path}, line {line}, column {name!r}: a missing value (every row "
                           "needs a target)")
    try:
        values = [float(c) for c in cells]
    except ValueError:
        return None
    for value, text, line in zip(values, cells, lines):
        if not math.isfinite(value):
            raise CLIError(f"{path}, line {line}, column {name!r}: {text!r} is not a finite "
                           "number (NaN and infinite values cannot be used)")
    return np.array(values, dtype=np.float64)


def cell(v):
    """The text of one output value: whole numbers without a fraction, a float
    with the fewest digits that give it back in its own precision."""
    if isinstance(v, (float, np.floating)):
        if float(v).is_integer() and abs(v) < 1e16:
            return str(int(v))
        return str(v) if isinstance(v, np.float32) else repr(float(v))
    if isinstance(v, np.integer):
        return str(int(v))
    return str(v)


def write_csv(fh, header, columns, delimiter=","):
    w = csv.writer(fh, delimiter=delimiter, lineterminator="\n")
    w.writerow(header)
    for row in zip(*columns):
        w.writerow([cell(v) for v in row])
