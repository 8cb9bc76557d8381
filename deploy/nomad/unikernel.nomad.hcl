# The unikernel on a HashiCorp Nomad cluster: N QEMU microvm guests, each on a
# port Nomad allocates, registered as the Nomad service "unikernel" with an HTTP
# check on /health, rolled one at a time on health with automatic revert.
#
# Every client needs qemu-system-x86_64 (Debian: qemu-system-x86) and the image
# at var.image (`cargo image`, or deploy/install.sh, which puts it there); the
# raw_exec driver must be enabled on the clients (plugin "raw_exec" { config {
# enabled = true } }). The site is a bundle (scripts/bundle DIR -o FILE) that
# Nomad downloads as an artifact into each allocation; a site update is a new
# bundle URL (or checksum) and `nomad job run`, which rolls the guests.
#
#   nomad job run -var bundle_url=https://example.com/site.bundle \
#       -var count=3 deploy/nomad/unikernel.nomad.hcl
#
# The QEMU arguments are the launcher's (`cargo qemu-args`) with the port and
# the bundle from the allocation, as in deploy/unikernel.service
# (tests-qemu/tests/nomad.rs boots them and compares them with the launcher's).

variable "count" {
  type    = number
  default = 3
}

variable "image" {
  type        = string
  default     = "/usr/local/lib/unikernel/unikernel.elf"
  description = "The image on every client (cargo image output)."
}

variable "bundle_url" {
  type        = string
  description = "Where Nomad fetches the site bundle (go-getter URL)."
}

variable "guest_config" {
  type        = string
  default     = "log=info"
  description = "Kernel command line: configuration words (README, Guest configuration)."
}

job "unikernel" {
  type = "service"

  group "web" {
    count = var.count

    network {
      port "http" {}
      # The admin endpoints (/metrics, /api/stats.json, /status): forwarded
      # from the client's 127.0.0.1 only; scrape them on the client itself.
      port "admin" {}
    }

    # One guest at a time; a new one must pass its check for 10 s; a version
    # whose guests never become healthy is rolled back.
    update {
      max_parallel      = 1
      health_check      = "checks"
      min_healthy_time  = "10s"
      healthy_deadline  = "2m"
      progress_deadline = "5m"
      auto_revert       = true
    }

    # A guest fault ends QEMU (status 3); Nomad starts it again.
    restart {
      attempts = 10
      interval = "5m"
      delay    = "2s"
      mode     = "delay"
    }

    service {
      name     = "unikernel"
      provider = "nomad"
      port     = "http"

      check {
        name     = "health"
        type     = "http"
        path     = "/health"
        interval = "10s"
        timeout  = "2s"
      }
    }

    task "guest" {
      driver = "raw_exec"

      artifact {
        source      = var.bundle_url
        destination = "local/site.bundle"
        mode        = "file"
      }

      config {
        command = "qemu-system-x86_64"
        args = [
          "-M", "microvm,rtc=on", "-accel", "kvm", "-accel", "tcg", "-m", "128M", "-smp", "1",
          "-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio",
          "-kernel", "${var.image}", "-no-reboot",
          "-initrd", "${NOMAD_TASK_DIR}/site.bundle",
          "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
          "-device", "ib700", "-action", "watchdog=reset",
          "-netdev", "user,id=net0,restrict=on,hostfwd=tcp:${NOMAD_IP_http}:${NOMAD_HOST_PORT_http}-:80,hostfwd=tcp:127.0.0.1:${NOMAD_HOST_PORT_admin}-:8081",
          "-device", "virtio-net-device,netdev=net0",
          "-device", "virtio-serial-device",
          "-chardev", "file,id=accesslog,path=${NOMAD_ALLOC_DIR}/logs/access.log,append=on",
          "-device", "virtserialport,chardev=accesslog,nr=1,name=access-log",
          "-append", "${var.guest_config}",
        ]
      }

      # QEMU stops the guest on SIGTERM.
      kill_timeout = "10s"

      resources {
        cpu    = 500
        memory = 192
      }
    }
  }
}
