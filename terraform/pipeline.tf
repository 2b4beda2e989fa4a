# The retraining pipeline on a schedule: Cloud Scheduler creates a Vertex AI PipelineJob from the compiled template
resource "google_cloud_scheduler_job" "retrain" {
  name      = "${var.name_prefix}-retrain"
  region    = var.region
  schedule  = var.pipeline_cron
  time_zone = "Etc/UTC"

  http_target {
    http_method = "POST"
    uri         = "https://${var.region}-aiplatform.googleapis.com/v1/projects/${var.project_id}/locations/${var.region}/pipelineJobs"
    headers     = { "Content-Type" = "application/json" }
    body = base64encode(jsonencode({
      displayName    = "${var.name_prefix}-retrain"
      templateUri    = var.pipeline_template_uri
      serviceAccount = google_service_account.pipeline.email
      encryptionSpec = { kmsKeyName = var.kms_key_name }
      runtimeConfig  = { gcsOutputDirectory = local.ldh_env.LDH_VERTEX_PIPELINE_ROOT }
    }))
    oauth_token {
      service_account_email = google_service_account.scheduler.email
      scope                 = "https://www.googleapis.com/auth/cloud-platform"
    }
  }
  depends_on = [google_service_account_iam_member.scheduler_acts_as_pipeline]
}
