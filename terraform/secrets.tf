# values are added out of band (gcloud secrets versions add), never through Terraform state
resource "google_secret_manager_secret" "api_keys" {
  secret_id = "${var.name_prefix}-api-keys"
  labels    = local.labels
  replication {
    user_managed {
      replicas {
        location = var.region
        customer_managed_encryption {
          kms_key_name = var.kms_key_name
        }
      }
    }
  }
  depends_on = [google_kms_crypto_key_iam_member.agents]
}

resource "google_secret_manager_secret" "deid_key" {
  secret_id = "${var.name_prefix}-deid-key"
  labels    = local.labels
  replication {
    user_managed {
      replicas {
        location = var.region
        customer_managed_encryption {
          kms_key_name = var.kms_key_name
        }
      }
    }
  }
  depends_on = [google_kms_crypto_key_iam_member.agents]
}
