# The retraining pipeline on a schedule: Cloud Scheduler creates a Vertex AI PipelineJob from the compiled template
locals {
  # the run's config_json parameter (pipelines/retrain/config.py RetrainConfig; the gate's thresholds keep their
  # defaults): it names the de-identification key's secret version, whose value each step reads from Secret
  # Manager as the pipeline account (secretAccessor on that secret only, iam.tf); the key is never a parameter
  retrain_config = {
    data_dir        = local.ldh_env.LDH_DATA_DIR
    model_store     = local.ldh_env.LDH_MODEL_STORE
    deid_key_secret = local.ldh_env.LDH_PIPELINE_DEID_KEY_SECRET
  }
}

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
      runtimeConfig = {
        gcsOutputDirectory = local.ldh_env.LDH_VERTEX_PIPELINE_ROOT
        parameterValues    = { config_json = jsonencode(local.retrain_config) }
      }
    }))
    oauth_token {
      service_account_email = google_service_account.scheduler.email
      scope                 = "https://www.googleapis.com/auth/cloud-platform"
    }
  }
  depends_on = [google_service_account_iam_member.scheduler_acts_as_pipeline]
}
