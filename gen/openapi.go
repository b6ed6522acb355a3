// Package gen holds the code and documents generated from proto/ by buf.
// Nothing under gen/ is edited by hand: run `make generate`.
package gen

import _ "embed"

// OpenAPI is the merged OpenAPI v2 document of the public REST API.
//
//go:embed openapi/webhooks.swagger.json
var OpenAPI []byte
