"""The co-responders' encounter intake: the form, its facts and its submission index."""
