variable "project_id" {
  description = "GCP project that holds the LDH Assist deployment."
  type        = string
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a GCP project ID (6-30 lower-case letters, digits, hyphens)."
  }
}

variable "region" {
  description = "Region of every resource that holds PHI or runs the service (Healthcare dataset, buckets, Cloud Run, Vertex AI)."
  type        = string
  default     = "europe-west4"
  validation {
    condition     = contains(var.phi_regions, var.region)
    error_message = "region must be one of phi_regions: PHI stays in the regions the data protection officer approved."
  }
}

variable "phi_regions" {
  description = "Regions approved to hold PHI (the checkov policy terraform/policies/phi_region.py holds the same default list)."
  type        = list(string)
  default     = ["europe-west1", "europe-west3", "europe-west4"]
  validation {
    condition     = length(var.phi_regions) > 0 && alltrue([for r in var.phi_regions : can(regex("^[a-z]+-[a-z]+[0-9]+$", r))])
    error_message = "phi_regions must list at least one single region such as europe-west4 (no multi-regions)."
  }
}

variable "name_prefix" {
  description = "Prefix of every resource name (bucket names add the project ID to be globally unique)."
  type        = string
  default     = "ldh"
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,14}$", var.name_prefix))
    error_message = "name_prefix must be 2-15 lower-case letters, digits or hyphens, starting with a letter."
  }
}

variable "kms_key_name" {
  description = "CMEK that encrypts the PHI: Healthcare dataset, buckets, Pub/Sub topics, secrets, Artifact Registry, Cloud Run (projects/P/locations/L/keyRings/R/cryptoKeys/K, same region)."
  type        = string
  validation {
    condition     = can(regex("^projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+$", var.kms_key_name))
    error_message = "kms_key_name must be a full Cloud KMS crypto key name."
  }
}

variable "service_image" {
  description = "Image of `ldh serve` in Artifact Registry (the repository's Dockerfile), e.g. REGION-docker.pkg.dev/P/ldh/ldh-assist:0.1.0."
  type        = string
  validation {
    condition     = can(regex("^[a-z0-9.-]+-docker\\.pkg\\.dev/.+:.+$", var.service_image))
    error_message = "service_image must be an Artifact Registry image with a tag."
  }
}

variable "pipeline_image" {
  description = "Components image of the retraining pipeline (pipelines/Dockerfile); becomes LDH_PIPELINE_IMAGE."
  type        = string
  validation {
    condition     = can(regex("^[a-z0-9.-]+-docker\\.pkg\\.dev/.+:.+$", var.pipeline_image))
    error_message = "pipeline_image must be an Artifact Registry image with a tag."
  }
}

variable "pipeline_template_uri" {
  description = "Compiled pipeline (`ldh pipeline compile`) the schedule runs: gs:// path or Artifact Registry KFP URI."
  type        = string
  validation {
    condition     = can(regex("^(gs://|https://[a-z0-9-]+-kfp\\.pkg\\.dev/)", var.pipeline_template_uri))
    error_message = "pipeline_template_uri must start with gs:// or https://REGION-kfp.pkg.dev/."
  }
}

variable "pipeline_cron" {
  description = "When the retraining pipeline runs (Cloud Scheduler crontab, UTC)."
  type        = string
  default     = "0 3 * * 1"
  validation {
    condition     = length(split(" ", var.pipeline_cron)) == 5
    error_message = "pipeline_cron must have 5 crontab fields."
  }
}

variable "min_instances" {
  description = "Cloud Run minimum instances of the service (>= 1: the Pub/Sub subscriber must always run)."
  type        = number
  default     = 1
  validation {
    condition     = var.min_instances >= 1 && var.min_instances <= 10
    error_message = "min_instances must be between 1 and 10."
  }
}

variable "max_instances" {
  description = "Cloud Run maximum instances of the service."
  type        = number
  default     = 3
  validation {
    condition     = var.max_instances >= 1
    error_message = "max_instances must be at least 1."
  }
}

variable "vpc_connector" {
  description = "Serverless VPC Access connector (projects/P/locations/L/connectors/C) for reaching an on-premises PACS; null = none."
  type        = string
  default     = null
  validation {
    condition     = var.vpc_connector == null || can(regex("^projects/[^/]+/locations/[^/]+/connectors/[^/]+$", var.vpc_connector))
    error_message = "vpc_connector must be a full connector name or null."
  }
}

variable "feedback_retention_days" {
  description = "Days every overwritten or deleted feedback record version stays recoverable (data bucket, feedback/)."
  type        = number
  default     = 3650
  validation {
    condition     = var.feedback_retention_days >= 365
    error_message = "feedback_retention_days must be at least 365."
  }
}

variable "subscription_max_attempts" {
  description = "Deliveries of one DICOM store notification before it goes to the dead-letter topic."
  type        = number
  default     = 10
  validation {
    condition     = var.subscription_max_attempts >= 5 && var.subscription_max_attempts <= 100
    error_message = "Pub/Sub allows 5 to 100 delivery attempts."
  }
}
