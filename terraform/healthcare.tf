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
  depends_on = [google_pubsub_topic_iam_member.healthcare_publishes]
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
  name                       = "${var.name_prefix}-dicom-dead-letter"
  topic                      = google_pubsub_topic.dead_letter.id
  message_retention_duration = "604800s"
  labels                     = local.labels
  expiration_policy {
    ttl = ""
  }
}

resource "google_pubsub_topic_iam_member" "healthcare_publishes" {
  topic  = google_pubsub_topic.dicom.id
  role   = "roles/pubsub.publisher"
  member = "serviceAccount:${local.agents.healthcare}"
}

# Pub/Sub moves undeliverable messages itself: it publishes to the dead-letter topic and acks on the subscription
resource "google_pubsub_topic_iam_member" "pubsub_dead_letters" {
  topic  = google_pubsub_topic.dead_letter.id
  role   = "roles/pubsub.publisher"
  member = "serviceAccount:${local.agents.pubsub}"
}

resource "google_pubsub_subscription_iam_member" "pubsub_forwards" {
  subscription = google_pubsub_subscription.dicom.id
  role         = "roles/pubsub.subscriber"
  member       = "serviceAccount:${local.agents.pubsub}"
}
