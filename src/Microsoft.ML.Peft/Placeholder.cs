namespace Microsoft.ML.Peft;
