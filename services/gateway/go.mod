module github.com/voxscriber/webhooks/services/gateway

go 1.26.0
