# The cloud PACS: a DICOM store whose every new instance is announced on Pub/Sub (the Cloud Healthcare receiver)
resource "google_healthcare_dataset" "phi" {
  name     = "${var.name_prefix}-dataset"
  location = var.region
  encryption_spec {
    kms_key_name = var.kms_key_name
  }
  depends_on = [google_kms_crypto_key_iam_member.agents]
}

resource "google_healthcare_dicom_store" "pacs" {
  name    = "${var.name_prefix}-dicom"
  dataset = google_healthcare_dataset.phi.id
  labels  = local.labels
  notification_config {
    pubsub_topic = google_pubsub_topic.dicom.id
  }
  depends_on = [google_pubsub_topic_iam_member.publishers]
}

resource "google_pubsub_topic" "dicom" {
  name         = "${var.name_prefix}-dicom-instances"
  kms_key_name = var.kms_key_name
  labels       = local.labels
  message_storage_policy {
    allowed_persistence_regions = [var.region]
  }
  depends_on = [google_kms_crypto_key_iam_member.agents]
}

resource "google_pubsub_topic" "dead_letter" {
  name         = "${var.name_prefix}-dicom-dead-letter"
  kms_key_name = var.kms_key_name
  labels       = local.labels
  message_storage_policy {
    allowed_persistence_regions = [var.region]
  }
  depends_on = [google_kms_crypto_key_iam_member.agents]
}

# pulled by `ldh serve` on Cloud Run (CPU always allocated), so no public push endpoint is needed
resource "google_pubsub_subscription" "dicom" {
  name                       = "${var.name_prefix}-dicom-instances"
  topic                      = google_pubsub_topic.dicom.id
  ack_deadline_seconds       = 120
  message_retention_duration = "604800s"
  labels                     = local.labels
  expiration_policy {
    ttl = ""
  }
  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }
  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter.id
    max_delivery_attempts = var.subscription_max_attempts
  }
}

# kept for an operator to inspect and replay what could not be processed
resource "google_pubsub_subscription" "dead_letter" {
  #checkov:skip=CKV_LDH_5:this subscription holds the dead letters themselves; a dead-letter topic of its own would move them again instead of keeping them for an operator
  name                       = "${var.name_prefix}-dicom-dead-letter"
  topic                      = google_pubsub_topic.dead_letter.id
  message_retention_duration = "604800s"
  labels                     = local.labels
  expiration_policy {
    ttl = ""
  }
}

# the Healthcare agent announces new instances; Pub/Sub itself publishes what it could not deliver to the
# dead-letter topic (and acks it on the subscription: google_pubsub_subscription_iam_member.subscribers)
resource "google_pubsub_topic_iam_member" "publishers" {
  for_each = {
    healthcare = { topic = google_pubsub_topic.dicom.id, agent = local.agents.healthcare }
    pubsub     = { topic = google_pubsub_topic.dead_letter.id, agent = local.agents.pubsub }
  }
  topic  = each.value.topic
  role   = "roles/pubsub.publisher"
  member = "serviceAccount:${each.value.agent}"
}
