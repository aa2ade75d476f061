"""What every part of the benchmark report prints alike: a figure's spread
over rounds and the table of its goals."""

import statistics
from typing import List


def spread(values: List[float], scale: float = 1.0, digits: int = 0) -> str:
    """The median of `values` (times `scale`) and their range: "12 (10-15)"."""
    values = [v * scale for v in values]
    return f"{statistics.median(values):,.{digits}f} ({min(values):,.{digits}f}-{max(values):,.{digits}f})"


def goals_table(rows: List[dict]) -> List[str]:
    """The "Goals" table of a part: a line per row of its evaluate()."""
    lines = ["### Goals", "", "| comparison | measured | goal | holds |", "| --- | --- | --- | --- |"]
    for row in rows:
        verdict = "(information)" if row["informative"] else ("yes" if row["holds"] else "**no**")
        lines.append(f"| {row['goal']} | {row['shown']} | {row['bound']} | {verdict} |")
    return lines
