#!/usr/bin/env bash
# Checks the Dockerfile without a Docker engine:
#   (a) builds the binary the way the Dockerfile does and checks that it is
#       statically linked and has the -healthcheck flag its HEALTHCHECK runs;
#   (b) checks the Dockerfile and .dockerignore for the properties the image
#       relies on: multi-stage, CGO_ENABLED=0, non-root USER, HEALTHCHECK,
#       VOLUME, no API key in ENV or ARG.
#
# Usage, from the repository root: bash deploy/check-dockerfile.sh
# Exits non-zero if any check fails.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
dockerfile="Dockerfile"
dockerignore=".dockerignore"

failures=0
pass() { printf 'ok    %s\n' "$*"; }
fail() { printf 'FAIL  %s\n' "$*"; failures=$((failures + 1)); }
check() { # check DESCRIPTION COMMAND...
	local what="$1"
	shift
	if "$@" >/dev/null 2>&1; then pass "$what"; else fail "$what"; fi
}

[[ -f "$dockerfile" ]] || { echo "FAIL  no $dockerfile in $root"; exit 1; }

# Instructions with comments dropped and continuation lines joined, one per line.
instructions="$(sed -e 's/^[[:space:]]*#.*$//' "$dockerfile" | sed -e ':a' -e '/\\$/{N;s/\\\n[[:space:]]*/ /;ba' -e '}' | grep -v '^[[:space:]]*$')"
instr() { grep -iE "^[[:space:]]*$1([[:space:]]|$)" <<<"$instructions" || true; }

echo "== Dockerfile ($root/$dockerfile)"

froms="$(instr FROM)"
check "multi-stage: at least two FROM" test "$(grep -c . <<<"$froms")" -ge 2
check "builder stage is golang:1.26" grep -qiE '^FROM[[:space:]]+golang:1\.26[^[:space:]]*[[:space:]]+AS[[:space:]]+' <<<"$froms"
final_from="$(tail -n 1 <<<"$froms")"
check "final stage is distroless static or scratch ($final_from)" \
	grep -qE '^FROM[[:space:]]+(gcr\.io/distroless/static[^[:space:]]*|scratch)([[:space:]]|$)' <<<"$final_from"

build_line="$(instr RUN | grep -E 'go build' || true)"
check "go build with CGO_ENABLED=0" grep -qE 'CGO_ENABLED=0[[:space:]]+go build' <<<"$build_line"
check "go build with -trimpath and -ldflags=\"-s -w\"" grep -qE -- '-trimpath.*-ldflags="-s -w"' <<<"$build_line"
check "go mod download before COPY . ." bash -c '
	dl=$(grep -nE "^RUN .*go mod download" <<<"$1" | head -n1 | cut -d: -f1)
	all=$(grep -nE "^COPY[[:space:]]+\.[[:space:]]+\." <<<"$1" | head -n1 | cut -d: -f1)
	[[ -n $dl && -n $all && $dl -lt $all ]]' _ "$instructions"

# The last USER wins; it must be set and must not be root.
user="$(instr USER | tail -n 1 | awk '{print $2}')"
check "USER is non-root (${user:-unset})" bash -c '
	u=$1; [[ -n $u ]] || exit 1
	name=${u%%:*}; group=${u#*:}
	[[ $name != root && $name != 0 && $group != root && $group != 0 ]]' _ "$user"

healthcheck="$(instr HEALTHCHECK)"
check "HEALTHCHECK runs the binary's -healthcheck" grep -qE 'CMD[[:space:]]+\[[[:space:]]*"/whatsapp-sessions",[[:space:]]*"-healthcheck"[[:space:]]*\]' <<<"$healthcheck"
check "VOLUME /data" grep -qE '^VOLUME[[:space:]]+(\[[[:space:]]*"/data"[[:space:]]*\]|/data)([[:space:]]|$)' <<<"$(instr VOLUME)"
check "SESSIONS_DIR=/data" grep -qE 'SESSIONS_DIR=/data([[:space:]]|$)' <<<"$(instr ENV)"
check "/data owned by the non-root user" grep -qE -- "--chown=${user}[[:space:]].*[[:space:]]/data$" <<<"$(instr COPY)"
check "EXPOSE 8080" grep -qE '^EXPOSE[[:space:]]+8080([/[:space:]]|$)' <<<"$(instr EXPOSE)"
check "no ENV or ARG holds API_KEY or another secret" bash -c \
	'! grep -iE "^(ENV|ARG)[[:space:]].*(API_KEY|SECRET|TOKEN|PASSWORD)" <<<"$1"' _ "$instructions"
check "no .env or session store copied in" bash -c \
	'! grep -iE "^(COPY|ADD)[[:space:]].*(\.env|\.api-key|\.wwebjs_auth)" <<<"$1"' _ "$instructions"

echo "== .dockerignore"
for pattern in .git .wwebjs_auth '**/.api-key' .env; do
	check "$dockerignore excludes $pattern" grep -qxF -- "$pattern" "$dockerignore"
done

echo "== binary"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
bin="$tmp/whatsapp-sessions"
# The same command as the Dockerfile's build stage, output path aside.
# -buildvcs=false because .dockerignore keeps .git out of the image's build
# context, so the image's binary carries no VCS stamp either.
if CGO_ENABLED=0 GOFLAGS="${GOFLAGS:+$GOFLAGS }-buildvcs=false" go build -trimpath -ldflags="-s -w" -o "$bin" . 2>"$tmp/build.log"; then
	pass "CGO_ENABLED=0 go build -trimpath -ldflags=\"-s -w\" ."

	buildinfo="$(go version -m "$bin")"
	check "go version -m: CGO_ENABLED=0" grep -qE '^[[:space:]]*build[[:space:]]+CGO_ENABLED=0$' <<<"$buildinfo"
	check "go version -m: -trimpath" grep -qE '^[[:space:]]*build[[:space:]]+-trimpath=true$' <<<"$buildinfo"

	# A dynamically linked ELF has a PT_INTERP program header (the loader).
	if command -v readelf >/dev/null; then
		check "readelf: no program interpreter (static)" bash -c '! readelf -lW "$1" | grep -q "Requesting program interpreter"' _ "$bin"
		check "readelf: no shared library dependencies" bash -c '! readelf -dW "$1" 2>/dev/null | grep -q "(NEEDED)"' _ "$bin"
	elif command -v ldd >/dev/null; then
		check "ldd: not a dynamic executable" bash -c 'ldd "$1" 2>&1 | grep -qE "not a dynamic executable|statically linked"' _ "$bin"
	else
		echo "skip  static linking: neither readelf nor ldd installed (go version -m checked CGO_ENABLED=0)"
	fi
	if command -v file >/dev/null; then
		check "file: statically linked" bash -c 'file "$1" | grep -q "statically linked"' _ "$bin"
	fi

	# The HEALTHCHECK runs "-healthcheck": a binary without that flag would be
	# reported unhealthy forever. Look for the flag name rather than running
	# the binary, which without the flag would start the service.
	check "binary knows the -healthcheck flag" grep -qa -- 'healthcheck' "$bin"
else
	fail "go build failed:"
	sed 's/^/      /' "$tmp/build.log"
fi

echo
if ((failures > 0)); then
	echo "$failures check(s) failed"
	exit 1
fi
echo "all checks passed"
