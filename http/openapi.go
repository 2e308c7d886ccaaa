package http

import _ "embed"

//go:embed openapi.json
var openAPI []byte

// OpenAPI is the OpenAPI 3 document of the whole API, served at
// /openapi.json.
func OpenAPI() []byte { return openAPI }
