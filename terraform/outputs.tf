output "ldh_env" {
  description = "LDH_* settings of the service and of `ldh pipeline submit|schedule` (README, Configuration); secrets are not outputs."
  value       = local.ldh_env
}

output "service_url" {
  description = "URL of `ldh serve` on Cloud Run (internal load balancer ingress)."
  value       = google_cloud_run_v2_service.ldh.uri
}

output "image_repository" {
  description = "Artifact Registry path to push the service and pipeline images to."
  value       = "${var.region}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.images.repository_id}"
}

output "dead_letter_subscription" {
  description = "Subscription that holds notifications the service could not process (inspect and replay)."
  value       = google_pubsub_subscription.dead_letter.id
}

output "secrets" {
  description = "Secret Manager secrets to fill out of band: LDH_API_KEYS and LDH_PIPELINE_DEID_KEY."
  value       = { for setting, secret in google_secret_manager_secret.ldh : setting => secret.id }
}
