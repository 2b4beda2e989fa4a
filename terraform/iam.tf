# one service account per role, each granted only on the resources it uses (no project-wide storage or healthcare role)
resource "google_service_account" "service" {
  account_id   = "${var.name_prefix}-service"
  display_name = "LDH Assist service (ldh serve on Cloud Run)"
}

resource "google_service_account" "pipeline" {
  account_id   = "${var.name_prefix}-pipeline"
  display_name = "LDH Assist retraining pipeline runner (Vertex AI)"
}

resource "google_service_account" "scheduler" {
  account_id   = "${var.name_prefix}-scheduler"
  display_name = "LDH Assist pipeline scheduler (Cloud Scheduler)"
}

locals {
  # (account, bucket, role): the service writes data and reads models; the pipeline writes all three
  bucket_grants = {
    service-data    = { member = google_service_account.service.member, bucket = "data", role = "roles/storage.objectAdmin" }
    service-models  = { member = google_service_account.service.member, bucket = "models", role = "roles/storage.objectViewer" }
    pipeline-data   = { member = google_service_account.pipeline.member, bucket = "data", role = "roles/storage.objectAdmin" }
    pipeline-models = { member = google_service_account.pipeline.member, bucket = "models", role = "roles/storage.objectAdmin" }
    pipeline-root   = { member = google_service_account.pipeline.member, bucket = "pipeline-root", role = "roles/storage.objectAdmin" }
  }
}

resource "google_storage_bucket_iam_member" "grants" {
  for_each = local.bucket_grants
  bucket   = google_storage_bucket.store[each.value.bucket].name
  role     = each.value.role
  member   = each.value.member
}

resource "google_healthcare_dicom_store_iam_member" "service_edits" {
  dicom_store_id = google_healthcare_dicom_store.pacs.id
  role           = "roles/healthcare.dicomEditor"
  member         = google_service_account.service.member
}

# pulls and acks the DICOM store's notifications: the service (its receiver) and Pub/Sub itself, which acks a
# message on the subscription when it moves it to the dead-letter topic
resource "google_pubsub_subscription_iam_member" "subscribers" {
  for_each     = { service = google_service_account.service.member, pubsub = "serviceAccount:${local.agents.pubsub}" }
  subscription = google_pubsub_subscription.dicom.id
  role         = "roles/pubsub.subscriber"
  member       = each.value
}

# the service reads both secrets; the pipeline only the de-identification key
resource "google_secret_manager_secret_iam_member" "readers" {
  for_each = {
    service-api-keys  = { member = google_service_account.service.member, secret = "LDH_API_KEYS" }
    service-deid-key  = { member = google_service_account.service.member, secret = "LDH_PIPELINE_DEID_KEY" }
    pipeline-deid-key = { member = google_service_account.pipeline.member, secret = "LDH_PIPELINE_DEID_KEY" }
  }
  secret_id = google_secret_manager_secret.ldh[each.value.secret].id
  role      = "roles/secretmanager.secretAccessor"
  member    = each.value.member
}

resource "google_artifact_registry_repository_iam_member" "readers" {
  for_each   = { service = google_service_account.service.member, pipeline = google_service_account.pipeline.member }
  repository = google_artifact_registry_repository.images.name
  location   = var.region
  role       = "roles/artifactregistry.reader"
  member     = each.value
}

# Vertex AI has no per-resource role for creating pipeline jobs: aiplatform.user is the narrowest predefined role
resource "google_project_iam_member" "vertex_users" {
  for_each = { pipeline = google_service_account.pipeline.member, scheduler = google_service_account.scheduler.member }
  project  = var.project_id
  role     = "roles/aiplatform.user"
  member   = each.value
}

# the scheduler starts runs as the pipeline account, and only that one
resource "google_service_account_iam_member" "scheduler_acts_as_pipeline" {
  service_account_id = google_service_account.pipeline.name
  role               = "roles/iam.serviceAccountUser"
  member             = google_service_account.scheduler.member
}
