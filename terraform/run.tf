# `ldh serve` on Cloud Run: REST API + viewer over HTTPS, and the Pub/Sub subscriber of the DICOM store's
# notifications (pull, so CPU stays allocated and at least one instance runs). DIMSE is not offered here.
resource "google_cloud_run_v2_service" "ldh" {
  name     = "${var.name_prefix}-serve"
  location = var.region
  ingress  = "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"
  labels   = local.labels

  template {
    service_account = google_service_account.service.email
    encryption_key  = var.kms_key_name
    scaling {
      min_instance_count = var.min_instances
      max_instance_count = var.max_instances
    }
    dynamic "vpc_access" {
      for_each = var.vpc_connector == null ? [] : [var.vpc_connector]
      content {
        connector = vpc_access.value
        egress    = "PRIVATE_RANGES_ONLY"
      }
    }
    containers {
      image   = var.service_image
      command = ["ldh"]
      args    = ["serve"]
      ports {
        container_port = 8080
      }
      resources {
        cpu_idle = false
        limits = {
          cpu    = "2"
          memory = "4Gi"
        }
      }
      dynamic "env" {
        for_each = local.ldh_env
        content {
          name  = env.key
          value = env.value
        }
      }
      env {
        name  = "LDH_API_HOST"
        value = "0.0.0.0"
      }
      dynamic "env" {
        for_each = google_secret_manager_secret.ldh
        content {
          name = env.key
          value_source {
            secret_key_ref {
              secret  = env.value.secret_id
              version = "latest"
            }
          }
        }
      }
      startup_probe {
        http_get {
          path = "/readyz"
        }
        period_seconds    = 10
        failure_threshold = 30
      }
      liveness_probe {
        http_get {
          path = "/healthz"
        }
      }
    }
  }
  depends_on = [google_secret_manager_secret_iam_member.readers, google_kms_crypto_key_iam_member.agents]
}
