"""Your exercises: edit these files, then run the check cell of the matching notebook."""
