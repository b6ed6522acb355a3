module github.com/voxscriber/webhooks/services/registry

go 1.26.0
