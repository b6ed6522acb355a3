module github.com/voxscriber/webhooks/pkg

go 1.26.0
