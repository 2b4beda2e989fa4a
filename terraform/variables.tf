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

variable "network" {
  description = "VPC network of the Filestore share that holds the service's state; Cloud Run reaches it (and an on-premises PACS) through it: a name or projects/P/global/networks/N."
  type        = string
  validation {
    condition     = can(regex("^(projects/[^/]+/global/networks/)?[a-z]([-a-z0-9]{0,61}[a-z0-9])?$", var.network))
    error_message = "network must be a VPC network name or projects/P/global/networks/N."
  }
}

variable "subnetwork" {
  description = "Subnetwork of the service's Direct VPC egress in var.region (used when vpc_connector is null): a name or projects/P/regions/R/subnetworks/S."
  type        = string
  validation {
    condition     = can(regex("^(projects/[^/]+/regions/[^/]+/subnetworks/)?[a-z]([-a-z0-9]{0,61}[a-z0-9])?$", var.subnetwork))
    error_message = "subnetwork must be a subnetwork name or projects/P/regions/R/subnetworks/S."
  }
}

variable "vpc_connector" {
  description = "Serverless VPC Access connector (projects/P/locations/L/connectors/C) on var.network instead of Direct VPC egress; null = Direct VPC egress on var.subnetwork."
  type        = string
  default     = null
  validation {
    condition     = var.vpc_connector == null || can(regex("^projects/[^/]+/locations/[^/]+/connectors/[^/]+$", var.vpc_connector))
    error_message = "vpc_connector must be a full connector name or null."
  }
}

variable "state_client_ranges" {
  description = "CIDR ranges that may mount the state share: the service's subnetwork (or connector) range and the admin VM that sets its owner once."
  type        = list(string)
  validation {
    condition     = length(var.state_client_ranges) > 0 && alltrue([for r in var.state_client_ranges : can(cidrhost(r, 0))])
    error_message = "state_client_ranges must list at least one IPv4 CIDR range such as 10.8.0.0/28."
  }
}

variable "state_capacity_gb" {
  description = "Size of the state share in GiB (node.db, inbox, results: the inbox holds studies until analysed and exported)."
  type        = number
  default     = 1024
  validation {
    condition     = var.state_capacity_gb >= 1024 && var.state_capacity_gb <= 9984
    error_message = "state_capacity_gb must be 1024 to 9984 (a REGIONAL Filestore share of the smaller capacity band)."
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
