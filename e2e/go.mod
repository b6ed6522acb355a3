module github.com/voxscriber/webhooks/e2e

go 1.26.0
