"""What the data is: the dataset's columns, features, label and partition naming, in one home every domain reads."""
