# Loaded by schemathesis (SCHEMATHESIS_HOOKS) in the API fuzzing test: an SDP
# offer for WHIP/WHEP is text, sent as is under its own media type.
import schemathesis

schemathesis.serializer.alias("application/sdp", "text/plain")
