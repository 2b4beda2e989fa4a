# data (inbox, studies, results, feedback, datasets), model registry, Vertex pipeline root
resource "google_storage_bucket" "store" {
  for_each                    = local.buckets
  name                        = each.value
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false
  labels                      = local.labels
  versioning {
    enabled = true
  }
  encryption {
    default_kms_key_name = var.kms_key_name
  }
  logging {
    log_bucket = google_storage_bucket.access_logs.name
  }
  # feedback records are the training labels: every overwritten or deleted version is kept this long
  dynamic "lifecycle_rule" {
    for_each = each.key == "data" ? [1] : []
    content {
      condition {
        matches_prefix             = ["ldh/feedback/"]
        days_since_noncurrent_time = var.feedback_retention_days
      }
      action {
        type = "Delete"
      }
    }
  }
  # elsewhere old versions go after 30 days
  lifecycle_rule {
    condition {
      days_since_noncurrent_time = 30
      matches_prefix             = each.key == "data" ? ["ldh/inbox/", "ldh/studies/", "ldh/results/", "ldh/datasets/"] : []
    }
    action {
      type = "Delete"
    }
  }
  depends_on = [google_kms_crypto_key_iam_member.agents]
}

# access logs of the three buckets (no PHI: object names carry UIDs only)
resource "google_storage_bucket" "access_logs" {
  #checkov:skip=CKV_GCP_62:this is the access-log sink of the other buckets; logging it into itself would record each log object Cloud Storage writes to it as a new access, without end
  name                        = "${var.name_prefix}-access-logs-${var.project_id}"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  labels                      = local.labels
  versioning {
    enabled = true
  }
  encryption {
    default_kms_key_name = var.kms_key_name
  }
  depends_on = [google_kms_crypto_key_iam_member.agents]
}

# Cloud Storage writes usage logs as this Google group (https://cloud.google.com/storage/docs/access-logs)
resource "google_storage_bucket_iam_member" "access_log_writer" {
  bucket = google_storage_bucket.access_logs.name
  role   = "roles/storage.objectCreator"
  member = "group:cloud-storage-analytics@google.com"
}

resource "google_artifact_registry_repository" "images" {
  repository_id = var.name_prefix
  location      = var.region
  format        = "DOCKER"
  kms_key_name  = var.kms_key_name
  labels        = local.labels
  depends_on    = [google_kms_crypto_key_iam_member.agents]
}
