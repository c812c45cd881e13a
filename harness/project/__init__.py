"""Final project: the persona dialogue data, its validation and the text formats used to fine-tune and evaluate."""
