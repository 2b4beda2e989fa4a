"""Prometheus metrics of one app (own registry, so several apps in one process do not collide)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        r = self.registry
        self.http_requests = Counter("ldh_http_requests_total", "HTTP requests", ["method", "route", "status"],
                                     registry=r)
        self.http_seconds = Histogram("ldh_http_request_seconds", "HTTP request latency", ["route"], registry=r,
                                      buckets=(0.005, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
        self.uploads = Counter("ldh_uploads_total", "Uploads by outcome", ["outcome"], registry=r)
        self.upload_bytes = Counter("ldh_upload_bytes_total", "Bytes received in uploads", registry=r)
        self.jobs = Counter("ldh_jobs_total", "Finished analysis jobs by outcome", ["outcome"], registry=r)
        self.job_seconds = Histogram("ldh_job_seconds", "Analysis job duration (queued excluded)", registry=r,
                                     buckets=(0.5, 1, 2, 3, 5, 8, 13, 21, 34, 60, 120))
        self.queue_depth = Gauge("ldh_queue_depth", "Jobs waiting to run", registry=r)
        self.jobs_running = Gauge("ldh_jobs_running", "Jobs running now", registry=r)
        self.feedback = Counter("ldh_feedback_total", "Feedback records stored", ["kind"], registry=r)
        self.errors = Counter("ldh_errors_total", "Requests refused or failed, by kind", ["kind"], registry=r)
        self.engine_ready = Gauge("ldh_engine_ready", "1 when the models are loaded", registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
