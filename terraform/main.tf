locals {
  labels = { app = "ldh-assist", managed-by = "terraform" }
  agents = {
    healthcare = "service-${data.google_project.this.number}@gcp-sa-healthcare.iam.gserviceaccount.com"
    pubsub     = "service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
    storage    = "service-${data.google_project.this.number}@gs-project-accounts.iam.gserviceaccount.com"
    secrets    = "service-${data.google_project.this.number}@gcp-sa-secretmanager.iam.gserviceaccount.com"
    registry   = "service-${data.google_project.this.number}@gcp-sa-artifactregistry.iam.gserviceaccount.com"
    run        = "service-${data.google_project.this.number}@serverless-robot-prod.iam.gserviceaccount.com"
    vertex     = "service-${data.google_project.this.number}@gcp-sa-aiplatform.iam.gserviceaccount.com"
    filestore  = "service-${data.google_project.this.number}@cloud-filer.iam.gserviceaccount.com"
  }
  buckets = {
    data          = "${var.name_prefix}-data-${var.project_id}"
    models        = "${var.name_prefix}-models-${var.project_id}"
    pipeline-root = "${var.name_prefix}-pipeline-root-${var.project_id}"
  }
  dicomweb_url = "https://healthcare.googleapis.com/v1/${google_healthcare_dicom_store.pacs.id}/dicomWeb"
  # what the service and the pipeline read (ai_service/config.py); also the `ldh_env` output
  ldh_env = {
    LDH_DATA_DIR               = "gs://${google_storage_bucket.store["data"].name}/ldh"
    LDH_MODEL_STORE            = "gs://${google_storage_bucket.store["models"].name}/registry"
    LDH_VERTEX_PROJECT         = var.project_id
    LDH_VERTEX_LOCATION        = var.region
    LDH_VERTEX_PIPELINE_ROOT   = "gs://${google_storage_bucket.store["pipeline-root"].name}/runs"
    LDH_VERTEX_SERVICE_ACCOUNT = google_service_account.pipeline.email
    LDH_PIPELINE_IMAGE         = var.pipeline_image
    # a Vertex step reads the de-identification key there (a run's parameters show in its console)
    LDH_PIPELINE_DEID_KEY_SECRET = "${google_secret_manager_secret.ldh["LDH_PIPELINE_DEID_KEY"].id}/versions/latest"
    LDH_NODE_EXPORT_STOW_URL     = local.dicomweb_url
    LDH_HEALTHCARE_SUBSCRIPTION  = google_pubsub_subscription.dicom.id
    LDH_HEALTHCARE_DICOMWEB_URL  = local.dicomweb_url
  }
}

# CMEK: every Google service agent that encrypts PHI for us may use the key (the key itself is the security team's)
resource "google_kms_crypto_key_iam_member" "agents" {
  for_each      = local.agents
  crypto_key_id = var.kms_key_name
  role          = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
  member        = "serviceAccount:${each.value}"
}
