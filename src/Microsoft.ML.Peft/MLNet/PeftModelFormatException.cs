namespace Microsoft.ML.Peft.MLNet;

/// <summary>
/// A saved model could not be read: the file is truncated or corrupted, a stream fails its checksum, or the model was
/// written by an incompatible version. The message names the file or stream concerned.
/// </summary>
public sealed class PeftModelFormatException : FormatException
{
    /// <summary>Creates the exception with a message.</summary>
    /// <param name="message">What could not be read, and where.</param>
    public PeftModelFormatException(string message)
        : base(message)
    {
    }

    /// <summary>Creates the exception with a message and the exception that revealed the problem.</summary>
    /// <param name="message">What could not be read, and where.</param>
    /// <param name="innerException">The underlying error.</param>
    public PeftModelFormatException(string message, Exception? innerException)
        : base(message, innerException)
    {
    }
}
