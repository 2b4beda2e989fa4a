# keyed by the setting each secret feeds; values are added out of band (gcloud secrets versions add), never
# through Terraform state
locals {
  secrets = {
    LDH_API_KEYS          = "api-keys"
    LDH_PIPELINE_DEID_KEY = "deid-key"
  }
}

resource "google_secret_manager_secret" "ldh" {
  for_each  = local.secrets
  secret_id = "${var.name_prefix}-${each.value}"
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
