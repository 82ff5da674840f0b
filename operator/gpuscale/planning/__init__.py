"""Pure planning: names, TF_CONFIG, child objects and the job lifecycle; no API calls."""
