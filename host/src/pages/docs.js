// GET /docs: starts Swagger UI on the host's own document. No request leaves this origin:
// the online validator badge is off, and the "Authorize" dialog offers the bearer scheme
// the document declares (the token stays in this page's memory).
"use strict";

window.addEventListener("DOMContentLoaded", () => {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    deepLinking: true,
    validatorUrl: null,
    persistAuthorization: false,
    displayRequestDuration: true,
    filter: true,
    tryItOutEnabled: false,
    docExpansion: "list",
    defaultModelsExpandDepth: 0,
  });
});
