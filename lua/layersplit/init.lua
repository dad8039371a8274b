-- layersplit: the API a policy (or a script, or the REPL) works with.
return {
	archive = require "layersplit.archive",
	digest = require "layersplit.digest",
	fs = require "layersplit.fs",
	gzip = require "layersplit.gzip",
	json = require "layersplit.json",
	errors = require "layersplit.errors",
	image = require "layersplit.image",
	settings = require "layersplit.settings",
	registry = require "layersplit.registry",
	client = require "layersplit.client",
}
