# Caddy in front of the Nomad job: the upstreams are Nomad's list of healthy
# "unikernel" instances. Render it with a Nomad template stanza in Caddy's own
# job (change_mode = "signal", change_signal = "SIGUSR1" reloads Caddy), e.g.
#
#   template {
#     source        = "deploy/nomad/Caddyfile.tpl"
#     destination   = "local/Caddyfile"
#     change_mode   = "signal"
#     change_signal = "SIGUSR1"
#   }
#
# nomadService lists only instances whose /health check passes, so Caddy's
# own checks below are a second line for the seconds between a failure and
# Nomad's next check.

{$UNIKERNEL_SITE:example.com} {
	reverse_proxy {{ range nomadService "unikernel" }}{{ .Address }}:{{ .Port }} {{ end }}{
		lb_policy least_conn
		lb_try_duration 5s
		lb_try_interval 250ms
		health_uri /health
		health_interval 2s
		health_timeout 2s
		health_status 200
		fail_duration 10s
		max_fails 1
		transport http {
			dial_timeout 2s
			response_header_timeout 10s
		}
	}
}
