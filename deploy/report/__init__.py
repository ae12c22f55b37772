"""The report a run writes: text, an HTML page, SVG plots."""
