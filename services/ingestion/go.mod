module github.com/voxscriber/webhooks/services/ingestion

go 1.26.0
