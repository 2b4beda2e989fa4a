"""One router per resource: studies (upload, results, images), jobs, feedback, models, health, web page."""
