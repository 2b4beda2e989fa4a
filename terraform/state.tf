# The service's file-system state on an NFS share (LDH_STATE_DIR): the DICOM node's node.db, inbox and results and
# the API's job database. Cloud Run's own file system is memory, lost with the instance; SQLite must not sit on a
# GCS FUSE mount (no locks, no atomic rename, every write an object upload). REGIONAL: stays in var.region (a PHI
# region) through a zone outage and takes the CMEK. Filestore's root directory belongs to root and the service runs
# as uid 10001 (Dockerfile): once after apply, mount the share from a VM in state_client_ranges and
# `chown 10001:10001` its root (Cloud Run writes NFS as the container's user; README, Deploy).
locals {
  state_dir = "/state"
}

resource "google_filestore_instance" "state" {
  name         = "${var.name_prefix}-state"
  location     = var.region
  tier         = "REGIONAL"
  kms_key_name = var.kms_key_name
  labels       = local.labels
  file_shares {
    name        = "ldh_state"
    capacity_gb = var.state_capacity_gb
    # only the service's subnetwork (and the admin VM that chowns it) may mount the PHI on it
    nfs_export_options {
      ip_ranges   = var.state_client_ranges
      access_mode = "READ_WRITE"
      squash_mode = "NO_ROOT_SQUASH"
    }
  }
  networks {
    network = var.network
    modes   = ["MODE_IPV4"]
  }
  depends_on = [google_kms_crypto_key_iam_member.agents]
}
