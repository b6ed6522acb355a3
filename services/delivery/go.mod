module github.com/voxscriber/webhooks/services/delivery

go 1.26.0
