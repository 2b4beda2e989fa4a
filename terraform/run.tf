# `ldh serve` on Cloud Run: REST API + viewer over HTTPS, and the Pub/Sub subscriber of the DICOM store's
# notifications (pull, so CPU stays allocated and the instance always runs). DIMSE is not offered here.
resource "google_cloud_run_v2_service" "ldh" {
  name     = "${var.name_prefix}-serve"
  location = var.region
  ingress  = "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"
  labels   = local.labels

  template {
    service_account = google_service_account.service.email
    encryption_key  = var.kms_key_name
    # NFS volumes need the second generation execution environment
    execution_environment = "EXECUTION_ENVIRONMENT_GEN2"
    # exactly one instance: the node's SQLite databases and its subscriber's state live on the NFS share, which
    # Cloud Run mounts without NFS locking, so SQLite's locks hold between the processes of one instance only;
    # a second instance would write the same databases unlocked (and receive the same notifications)
    scaling {
      min_instance_count = 1
      max_instance_count = 1
    }
    # the VPC of the Filestore share (and of an on-premises PACS): Direct VPC egress, or a connector if given
    vpc_access {
      connector = var.vpc_connector
      egress    = "PRIVATE_RANGES_ONLY"
      dynamic "network_interfaces" {
        for_each = var.vpc_connector == null ? [var.subnetwork] : []
        content {
          network    = var.network
          subnetwork = network_interfaces.value
        }
      }
    }
    volumes {
      name = "state"
      nfs {
        server    = google_filestore_instance.state.networks[0].ip_addresses[0]
        path      = "/${google_filestore_instance.state.file_shares[0].name}"
        read_only = false
      }
    }
    containers {
      image   = var.service_image
      command = ["ldh"]
      args    = ["serve"]
      ports {
        container_port = 8080
      }
      volume_mounts {
        name       = "state"
        mount_path = local.state_dir
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
      env {
        name  = "LDH_STATE_DIR"
        value = local.state_dir
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
