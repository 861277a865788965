"""The promotion gate: whether a challenger model beats the champion, with the statistics to say how surely."""
